"""The embedded ``mem://`` store: a small Redis with a Lua 5.1 runtime."""
