"""The platform's shared contracts: datasets, events, lake layout, naming and AWS clients.

Infra and every service import this package; services never import each other.
"""
