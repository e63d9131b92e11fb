"""What comes in: trigger events, export files read row by row, records and user changes."""
