"""The ambient-aware benchmark: synthetic episodes whose sound is known stem by stem."""
