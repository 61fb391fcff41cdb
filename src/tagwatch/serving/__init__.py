"""Serving: a real Triton (bundled with nvidia-pytriton) serving a registry alias on loopback, and the client.

Import ``tagwatch.serving.client`` in consumers (it never imports kserve); ``server`` is a process entry point.
"""
