"""The records the API shows (JSON shapes) and the operations on apps and targets that
the admin API, the console and the CLI share."""
