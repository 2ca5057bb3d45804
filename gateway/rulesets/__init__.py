"""The loaded rule set and what operators do with rule directories: reload state, dry runs,
backtests."""
