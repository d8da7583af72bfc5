"""HTTP tools that do I/O, shared by both drivers."""
