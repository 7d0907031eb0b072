"""What the API, the CLI and the activities call: job and batch intake, imports, results, reports, keys,
schedules, webhooks, redrive and reconcile. Services never import the API, the CLI or the worker script."""
