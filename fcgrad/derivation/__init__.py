"""A derivation checked term by term against JAX: end to end and isolated, origin or inherited."""
