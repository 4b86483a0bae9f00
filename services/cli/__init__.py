"""``schoolcard``: the operator CLI for integrators and SREs (typer + rich).

Publish integrator messages, tail topics with decoded events, query balances, statements,
attendance and rides over ``apps.replies.v1``, inspect and replay dead letters, show consumer
lag. Entry points: the ``schoolcard`` script and ``python -m services.cli``.
"""
