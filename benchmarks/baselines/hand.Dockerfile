# baseline-hand: a careful hand-written BuildKit Dockerfile. The key is
# forwarded (`--ssh default`), host keys come pinned as a secret, and the
# requirements are copied before the app so an app change skips the install.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG PIP_INDEX_URL
COPY requirements.txt /tmp/requirements.txt
RUN --mount=type=ssh \
    --mount=type=secret,id=known_hosts,target=/root/.ssh/known_hosts \
    pip install --no-cache-dir --index-url "${PIP_INDEX_URL}" \
        -r /tmp/requirements.txt
COPY . /app
WORKDIR /app
CMD ["python", "-m", "app"]
