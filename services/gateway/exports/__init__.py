"""The bulk exports: formats, one file per kind, the ZIP, Parquet, the participant-day
table, the codebook's documents, the compliance report, and the download routes."""
