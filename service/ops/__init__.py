"""Running the deployment: the `trainq up` supervisor, the reconciler, Redis, probes."""
