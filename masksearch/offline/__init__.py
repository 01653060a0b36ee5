"""`masksearch run`: the offline job that chains corpus → index → mask → generate (above the
stages it chains)."""
