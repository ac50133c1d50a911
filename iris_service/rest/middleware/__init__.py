"""The request hooks around every view: compression, security, auth, request log, metrics, tracing."""
