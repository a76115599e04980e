"""Static and offline checks of deploy/: systemd units, the Dockerfile, compose, Kubernetes
manifests and Prometheus alert rules. Fast, no network; tools that are missing skip the test
that needs them, except under ``CI=true``, where CI must run them (tests/deploy/tools.py)."""
