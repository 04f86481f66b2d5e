"""Standards checks over what the whole test session made the stack publish (collected after
everything else, `zz_`, and after tests/zz_privacy)."""
