"""Everything that answers HTTP: ingest, the admin API, OpenAPI, the console, the uvicorn
protocol and server options."""
