"""Capacity planning: searches over replays (the highest load that meets an SLO)."""
