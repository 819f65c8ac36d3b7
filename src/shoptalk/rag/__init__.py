"""Retrieval over the project's documents: chunk, embed, index, retrieve, answer with citations.

shoptalk index DIR            # build or update .shoptalk/index/
shoptalk ask DIR "q" --rag    # answer from the documents, with checked citations
"""
