"""What a run publishes from its frames: GIF, MP4, grid, contact sheet, soundtrack and smoothness."""
