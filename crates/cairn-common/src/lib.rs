//! Shared kit: ids, config helpers, tracing setup, shutdown, crash-safe fs helpers, gRPC tuning
