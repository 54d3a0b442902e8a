"""`perfserve profile`: py-spy and memray on a server under the native engine's load.

The modules, from the command down: command (options, attach or start), run (the load
steps with and without the profiler), spy (py-spy), target (the server's process),
stages (frames to stages, as data), table (the per-stage table against /proc), stacks
(collapsed stacks, speedscope), flamegraph (SVG), outputs (the files), compare (two
profiles), memory (memray over a window of requests).
"""
