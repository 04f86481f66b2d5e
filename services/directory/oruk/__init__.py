"""Open Referral UK (HSDS 3) in the directory: its schemas, the Waymark taxonomies that carry
Waymark's own fields as ORUK attributes, the mapping between Waymark's model and ORUK's, the
importer, and the ORUK read API under `/oruk`."""
