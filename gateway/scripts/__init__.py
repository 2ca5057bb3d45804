"""Scripts the gateway runs inside its stores (Lua for Redis), kept as files so they are
read, linted and diffed as the languages they are; loaded with importlib.resources."""
