"""The trajectory store: one row per example id in SQLite or Postgres (`trajectories`), the JSONL
export, and the SQL of both dialects side by side (`sql`). It depends only on the record schema,
so the batch pipeline, the graph's `save` node (through `Resources`) and training all read it."""
