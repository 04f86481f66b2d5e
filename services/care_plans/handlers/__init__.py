"""Use cases of the care plans service: one per command, grouped by what they act on
(`plans`, `break_glass`, `assessments`, the referral `timeline`; `access` finds a plan and
decides whether the caller may use it). The caller's unit of work owns the transaction; a
change, its new version, its audit entry and its events commit together."""
