"""rlreg."""
