"""Studies: experiments made of several runs (the demo first; full studies in a later issue)."""
