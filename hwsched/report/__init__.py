"""Reporting: terminal tables, JSON and HTML built from analysis results (never from models)."""
