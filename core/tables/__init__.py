"""Questions over tables: catalog, text-to-SQL, SQL guard and guarded execution."""
