"""The care plan rules: pure and synchronous, no I/O. One module per concept: `screening`
(instruments, scoring, bands, trends), `versions` (what changed between two versions),
`access` (who may see or change a plan, and what a refusal says), `contacts` (the contact
details a change is audited for)."""
