"""Data the directory ships: the synthetic postcode table of the fictional demo ICS."""
