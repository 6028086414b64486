"""Multi-node failure simulations of session nodes sharing one store (issue 12)."""
