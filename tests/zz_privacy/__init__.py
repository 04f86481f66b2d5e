"""Privacy checks that run after everything else (collected last: `zz_`)."""
