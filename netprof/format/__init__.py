"""The trace file, the one contract between capture and analysis: the records (declared once as
construct Structs in records.py, with the plain offsets the capture path uses in layout.py), the
reader and writer (tracefile.py), the format version and what a file may hold (tracecheck.py)."""
