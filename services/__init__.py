"""EmoGo services: one Litestar app per folder, plus the shared package `common`."""
