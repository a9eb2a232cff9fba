# baseline-old: the popular recipe this project replaces, reproduced from its
# description. DO NOT USE: the key is a build arg and a file in a stage.
ARG BASE_IMAGE
FROM ${BASE_IMAGE} AS intermediate
ARG SSH_PRIVATE_KEY
ARG GIT_HOST
ARG GIT_PORT
ARG PIP_INDEX_URL
RUN mkdir -p /root/.ssh \
    && echo "${SSH_PRIVATE_KEY}" > /root/.ssh/id_rsa \
    && chmod 600 /root/.ssh/id_rsa \
    && ssh-keyscan -p "${GIT_PORT}" "${GIT_HOST}" >> /root/.ssh/known_hosts
COPY requirements.txt /requirements.txt
# setuptools and wheel come along so the runtime stage can build the private sdist.
RUN pip download --index-url "${PIP_INDEX_URL}" --dest /vendor/python \
        -r /requirements.txt setuptools wheel

FROM ${BASE_IMAGE}
COPY --from=intermediate /vendor/python /vendor/python
RUN pip install --no-index --find-links /vendor/python /vendor/python/*
COPY . /app
WORKDIR /app
CMD ["python", "-m", "app"]
