"""Agents: policies, evaluation, and (from the agent issue on) PPO and BRiTE training.

The ``brite-agent`` command lives in :mod:`agents.cli`.
"""
