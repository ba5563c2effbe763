"""Audits: the blog's published code, and a whole network of yours, against JAX."""
