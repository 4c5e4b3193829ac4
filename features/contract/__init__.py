"""The store-history data contract: its tables, DuckDB views over them, and validation.

``tables`` declares every table and column once; that one declaration drives the typed
views (``histories``), the validation SQL (``validation``), the printed report (``report``)
and the synthetic generator's schemas. A histories directory holds one Parquet/CSV file or
Parquet folder per table; bad input is reported with the table, column, number of rows and
example keys, and nothing is written.
"""
