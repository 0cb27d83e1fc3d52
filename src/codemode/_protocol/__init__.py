"""The data leaf: plain data every layer shares (results, output items, call records, session
defaults and limits, the lifecycle states, the sandbox helper table, how a syntax error shows
its line).

Invariant: nothing in this package imports any other part of codemode, so every layer may
depend on it and it depends on none.
"""
