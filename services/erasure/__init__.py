"""Erasure service: right-to-be-forgotten requests, from intake to a verified certificate."""
