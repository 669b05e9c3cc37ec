"""Shared pieces every layer uses: errors, atomic outputs, devices, and the artifacts stages exchange."""
