"""The Gradio app's pieces: model zoo, rendering, callbacks (handlers) and layout (tabs)."""
