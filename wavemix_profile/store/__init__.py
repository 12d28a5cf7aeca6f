"""Store: results kept on disk.

The JSON Lines result store, its POSIX record locks, whole-file atomic replacement, regular files.
May import: core, the zoo, and store.
"""
