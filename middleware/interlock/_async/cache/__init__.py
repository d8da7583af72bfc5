"""The distributed cache: reads, loads, writes, near cache, refresh."""
