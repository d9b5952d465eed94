"""Settings and cross-cutting helpers."""
