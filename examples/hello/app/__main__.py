"""The example app: proves its private dependency is installed."""

import privpkg

print(f"hello from an image built by securebuild-tasks: privpkg {privpkg.VERSION} is installed")
