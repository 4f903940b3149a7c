"""The app's pages, one small file each (run by st.navigation in annotator/app.py).

Not named pages/: Streamlit treats a pages/ folder beside the entry point as an old-style (v1) multipage app
and then ignores st.navigation.
"""
