"""Images: safe loading and preprocessing, and the padding/image loading that turns examples into batches."""
