"""Fine-tuning jobs: a persistent queue in the registry and a worker that runs it."""
