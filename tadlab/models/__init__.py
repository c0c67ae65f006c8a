"""(filled in at integration)"""
