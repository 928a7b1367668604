"""Conversion tools: hub-weight porting, and (later) .tflite variants and TFLite Micro arrays."""
