"""domains/molecules"""
