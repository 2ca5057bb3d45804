"""Delivery: the worker host and its worker processes, the pipe protocol between them, the
load monitor, the wiring of the dispatcher to the store, alerts and cancel_on."""
