"""domains/grid"""
